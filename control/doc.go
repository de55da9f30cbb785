// Package control is govs's local control interface: a unix socket on which the running daemon
// answers `govs stats`, `govs list` and friends with JSON, so operators and tests read the same
// figures. One request per connection: the client writes a command line, the server writes one
// JSON document and closes.
package control
