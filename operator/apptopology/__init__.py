"""apptopology: declare an application's tiers and flows, get least-privilege NetworkPolicies."""

from importlib.metadata import PackageNotFoundError, version

# The version lives in one place, pyproject.toml; an installed package (the image, `pip install -e .`)
# carries it in its metadata.
try:
    __version__ = version("apptopology")
except PackageNotFoundError:  # a source tree that was never installed
    __version__ = "0+unknown"
