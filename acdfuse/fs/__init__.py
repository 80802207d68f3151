"""The FUSE side of a mount: the libfuse binding, Operations, attribute and errno translation, handles.

Submodules are imported where needed; importing this package loads neither libfuse nor the client.
"""
