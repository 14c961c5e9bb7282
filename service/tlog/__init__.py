"""The transparency log: entries, batch integration into the RFC 6962 tree, proofs and verification."""
