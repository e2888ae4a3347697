"""govnode's sans-I/O protocol core: wire format and trust rules.

Nothing here opens a socket, touches a database, reads a clock or draws randomness
it was not handed. The node (``node/``) is the I/O shell around it.
"""
