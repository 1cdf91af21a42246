"""Errors the command line turns into one clear line and a non-zero exit, never a traceback."""


class UserError(Exception):
    """Bad input from the user (unknown name, missing file, wrong checkpoint): says what to do."""
