"""Device/edge collaboration: split planning and transport, joint inference, federated learning.

Kept free of imports so that each part loads only the extras it needs.
"""
