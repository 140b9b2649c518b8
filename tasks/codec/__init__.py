"""What values are on the wire: the tagged JSON codec every task message, result and cache
entry uses, and the shapes of JSON no part accepts. Imports only ``config`` and ``errors``."""
