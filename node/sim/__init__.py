"""``govnode sim``: whole federations as real nodes on one machine, with faults.

``build`` makes every node's data directory offline (keys, config, certificate
through the air-gapped enrollment path of ``govnode enroll``); ``worker`` processes
run the nodes, their traffic and the faults that touch them; ``run`` coordinates and
``report`` reads the outcome back from every node's SQLite file.
"""
