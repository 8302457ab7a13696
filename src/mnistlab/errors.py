"""One exception family: anything a user can cause ends as a one-line message, never a traceback."""


class MnistlabError(Exception):
    """Base of every user-facing error; the CLI prints ``error: <message>`` and exits with 2."""


class DataError(MnistlabError):
    """A dataset file is missing, malformed, or fails its checksum."""


class ImageTooLarge(DataError):
    """An image file holds more pixels than mnistlab decodes (refused from its header)."""


class RecipeError(MnistlabError):
    """A recipe field has an invalid value or an unknown key."""


class RunError(MnistlabError):
    """A run folder is missing a file, or a file in it is damaged."""


class FileSystemError(MnistlabError, OSError):
    """The file system refused a read or write (read-only, full, name too long, ...).

    Also an OSError, so code that tolerates a failing cache write keeps catching it as one.
    """

    def __str__(self) -> str:  # the one-line message, not OSError's "[Errno n] ..." rendering
        return str(self.args[0]) if self.args else ""
