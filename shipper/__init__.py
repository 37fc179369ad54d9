"""shipper: a Fluent Bit compatible log shipper that knows Ray's log directory."""

__version__ = "0.1.0"
