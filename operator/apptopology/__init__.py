"""apptopology: declare an application's tiers and flows, get least-privilege NetworkPolicies."""

__version__ = "0.1.0"
