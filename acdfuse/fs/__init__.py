"""The FUSE side of a mount: fusepy Operations, errno mapping, handles, and the mount's lifecycle helpers.

Submodules are imported where needed; importing this package loads neither libfuse nor the client.
"""
