// Package netnstest holds the helpers tests use to build throw-away network namespaces: root
// checks that fail instead of skipping under CI=true, bounded `ip` commands, and running code on a
// thread inside a namespace.
package netnstest
