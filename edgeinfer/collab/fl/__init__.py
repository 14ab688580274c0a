"""Federated learning with Flower across sites whose data never leaves them.

``data`` (synthetic non-IID site data), ``model`` (the torch classifier), ``compress`` (int8
deltas), ``strategy`` (quorum, ledger and audit around Flower's strategies), ``client_app`` /
``server_app`` (the Flower App), ``export`` (new artifact version), ``deploy`` (SuperLink and
SuperNode processes, ``flwr run``), ``cli`` (``edgeinfer fl``). Nothing is imported here, so that
``import edgeinfer`` works without the ``fl`` extra.
"""
