"""The one producer: the cache, the incremental build, writing files and the manifest of what is served."""
