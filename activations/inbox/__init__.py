"""The in-app inbox: messages the in_app channel writes, served to the app by an HTTP endpoint
(activations/inbox/service.py) that knows the person by a signed token, their reads and clicks
landing as feedback events beside the providers'."""
