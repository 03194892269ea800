"""Channel machinery every feature shares: the frame context and its checks, relaying to a
topic's members, ending a channel, and a connection's departure."""
