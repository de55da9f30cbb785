// Package config turns a govs TOML file into a validated model, so that every
// mistake an operator can make is reported up front as "file:line: field: what
// to write instead" rather than surfacing later as a dropped packet.
package config
