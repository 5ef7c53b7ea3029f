"""The one error type the report code raises for bad input."""


class ReportInputError(ValueError):
    """Input the report cannot use: the message is one line naming the file or value and the fix."""
