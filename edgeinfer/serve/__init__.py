"""The edge node: HTTP API, metrics, dashboard (``edgeinfer serve``) and the MQTT uplink.

Kept free of imports so that each part loads only the extras it needs.
"""
