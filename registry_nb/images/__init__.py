"""Images: one abstraction over where images live, and the ways they move and are read.

:mod:`~registry_nb.images.image` (``open_image`` → ``Image``/``ImageIndex``, the store
and sink interfaces, a registry repository as a store), :mod:`~registry_nb.images.layout`
(OCI image layouts, ``docker save`` archives), :mod:`~registry_nb.images.copy` (verified
copies between any store and sink), :mod:`~registry_nb.images.assemble` (images from
folders), :mod:`~registry_nb.images.layers` (layer tar streams) and
:mod:`~registry_nb.images.packages` (package databases). Built on ``oci`` and ``remote``.
"""
