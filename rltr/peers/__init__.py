"""Peers: other libraries' methods run on rltr's examples and scored the same way (``kvpress:NAME``)."""
