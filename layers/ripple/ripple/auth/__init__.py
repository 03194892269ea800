"""Who a client is: JWT verification and the claims a subscription runs with."""
