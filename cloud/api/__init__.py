"""HTTP API of the cloud controller: app factory, auth, one error mapping, thin routers."""
