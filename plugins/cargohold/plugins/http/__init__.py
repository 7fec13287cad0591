"""What both HTTP frontends need, written once: the Docker volume-plugin server
(``cargohold.plugins.docker``) and the Engine-API daemon (``cargohold.plugins.engine``).

Plain functions, no web framework, so a frontend can move to a server that
hijacks connections and still use them:

- `bodies`: a request body as a JSON object, and its typed fields;
- `errors`: the HTTP status of an error (the core's errors carry theirs), and back;
- `sockets`: claiming a unix socket path, replacing a dead server's leftover;
- `accept`: the accept loop, a thread per connection, both servers run;
- `calls`: a lean HTTP/1.1 server for small request-answer calls (the plugin
  server's; the daemon, which streams and hijacks, keeps Flask on h11);
- `flask_errors`: the one Flask-specific part, error handlers answering in each
  frontend's own shape.

Only the standard library and the core's errors are imported here (Flask only
in `flask_errors`, httptools only in `calls`), so importing the kit costs a
command nothing.
"""
