"""HTTP: routes, request dependencies, middleware and the mapping of domain errors to problem+json."""
