"""pbx-router: an on-premises AI front door for healthcare phone lines, on Asterisk ARI."""

__version__ = "0.1.0"
