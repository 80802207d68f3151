"""
acdfuse.api: a client for the Amazon Cloud Drive REST API v1 and compatible servers.

It keeps the interface of ``acdcli.api`` (acd_cli 0.3.1): code written for that package works with
``acdcli.api`` replaced by ``acdfuse.api``. Importing this package has no side effects; import the
submodules you need.

Usage
=====
::

    from acdfuse.api import client
    acd_client = client.ACDClient()          # config dir: the current directory
    root = acd_client.get_root_id()
    children = acd_client.list_children(root)
    for child in children:
        print(child['name'])

The config dir holds ``oauth_data`` (tokens), optionally ``client_data`` (client id and secret for
the local OAuth flow), ``endpoint_data`` (cached endpoint URLs) and ``acdfuse_server`` (the base URL
of an ``acdfuse serve``; without it Amazon's URLs are used).

Node JSON
=========
A file node as the server returns it::

    {
        'id': 'AbCdEfGhIjKlMnOpQr0123',          # 22 characters
        'name': 'empty.txt',
        'kind': 'FILE',                          # or 'FOLDER' ('ASSET' for derivatives)
        'parents': ['0123AbCdEfGhIjKlMnOpQr'],   # several parents are possible, also for folders
        'status': 'AVAILABLE',                   # 'TRASH'; 'PURGED' only in changes; 'PENDING'
        'version': 1,                            # +1 on every metadata or content change
        'createdDate': '2015-01-01T00:00:00.000Z',
        'modifiedDate': '2015-01-01T00:00:00.000Z',
        'createdBy': '<security-profile-nm>-<user>',
        'labels': [], 'description': '', 'eTagResponse': 'AbCdEfGhI01',
        'isShared': False,                       # False even for shared nodes
        'restricted': False,
        'contentProperties': {'size': 0, 'md5': 'd41d8cd98f00b204e9800998ecf8427e',
                              'contentType': 'text/plain', 'extension': 'txt',
                              'version': 1},     # +1 on every overwrite
    }

Folders have no ``contentProperties``.
"""

from __future__ import annotations

__version__ = "0.1.0"
