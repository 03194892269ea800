"""Phoenix channels over API Gateway: the `$default` route's frame router."""
