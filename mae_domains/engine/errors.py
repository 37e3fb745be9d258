"""Why a run stops on purpose (the CLI prints the message in one line and exits with code 2)."""


class TrainingStopped(RuntimeError):
    """The run stopped on purpose (non-finite loss, too many bad samples, a full disk); the last
    checkpoint is kept."""
