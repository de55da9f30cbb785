// Package config turns a govs TOML file into a validated model, so that every
// mistake an operator can make is reported up front as "file:line: field: what
// to write instead" rather than surfacing later as a dropped packet.
//
// It imports sched, a pure standard-library package, so that the scheduler
// names, scheduler flags and Maglev table sizes it accepts are exactly the
// ones the data plane can build.
package config
