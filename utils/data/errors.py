"""The one exception of the data layer that entry scripts turn into exit status 2.

Its own module so that every data module (loaders, downloads, folders, the ImageNet
builder) can raise it without importing the loaders.
"""


class DataUnavailable(Exception):
    """The dataset cannot be used; the message tells the user what to do."""
