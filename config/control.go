package config

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/BurntSushi/toml"
)

// ReadControlSocket reads from the config file at path only what `govs stats` and `govs list` need
// to reach the govs running with it: its [control] socket. The rest of the file is not validated:
// the file on disk may be mid-edit or broken while the running govs keeps its last good
// configuration, and that govs must stay reachable.
//
// A file that is not valid TOML is searched line by line for the [control] table's socket; if
// none is found, DefaultControlSocket is used. note then says so in one line, with the file's
// first syntax error, for the caller to show as a warning; it is empty otherwise. err is set when
// the file cannot be read, or when it is valid TOML whose [control] socket is written wrong (no
// guess is better than a wrong one there).
func ReadControlSocket(path string) (socket, note string, err error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return "", "", fmt.Errorf("failed to read config: %w", err)
	}
	return controlSocketOf(data, path)
}

// controlSocketOf is ReadControlSocket on data, the contents of filename.
func controlSocketOf(data []byte, filename string) (socket, note string, err error) {
	p := &parser{file: filename, src: data}
	var generic map[string]any
	if _, err := toml.Decode(string(data), &generic); err != nil {
		p.tomlError(err)
		why := p.errs[0].Error()
		if s, line, ok := scanControlSocket(data); ok {
			return s, fmt.Sprintf("%s (the file is not valid TOML; using the [control] socket at line %d)", why, line), nil
		}
		return DefaultControlSocket, fmt.Sprintf("%s (the file is not valid TOML and has no readable [control] socket: trying the default %s; -control SOCK names another)",
			why, DefaultControlSocket), nil
	}
	p.pos = indexPositions(data)
	var c Control
	switch v := generic["control"].(type) {
	case nil:
		c.Socket = DefaultControlSocket
	case map[string]any:
		p.control(&rawControl{Socket: v["socket"]}, &c)
	default:
		p.errf("control", "is %s but must be a table; write [control] on a line of its own, followed by socket = %q", typeName(v), DefaultControlSocket)
	}
	if len(p.errs) > 0 {
		return "", "", p.errs
	}
	return c.Socket, "", nil
}

// scanControlSocket looks, line by line, for the socket of the [control] table (written as
// `socket = "..."` under a [control] header, or as `control.socket = "..."` at the top level) in
// text the TOML parser rejected. It returns the first absolute path it finds and its line.
func scanControlSocket(src []byte) (socket string, line int, ok bool) {
	table := ""
	for i, l := range strings.Split(string(src), "\n") {
		l = strings.TrimSpace(l)
		if strings.HasPrefix(l, "[") {
			// Until a [control] header, keys belong elsewhere (also under [[...]] and a header
			// too broken to read).
			table = "["
			if name, _, closed := strings.Cut(l[1:], "]"); closed && !strings.HasPrefix(l, "[[") {
				table = normalizeKey(name)
			}
			continue
		}
		key, val, isKV := strings.Cut(l, "=")
		if !isKV {
			continue
		}
		full := normalizeKey(key)
		if table != "" {
			full = table + "." + full
		}
		if full != "control.socket" {
			continue
		}
		if s, isString := scanString(strings.TrimSpace(val)); isString && filepath.IsAbs(s) {
			return filepath.Clean(s), i + 1, true
		}
	}
	return "", 0, false
}

// normalizeKey drops the white space around the dots of a dotted key and the quotes of quoted
// parts, for comparison.
func normalizeKey(k string) string {
	parts := strings.Split(k, ".")
	for i, p := range parts {
		parts[i] = strings.Trim(strings.TrimSpace(p), `"'`)
	}
	return strings.Join(parts, ".")
}

// scanString reads the TOML string that v starts with: a basic string (escapes as in Go, which
// covers what a path needs) or a literal one.
func scanString(v string) (string, bool) {
	switch {
	case strings.HasPrefix(v, `'`):
		s, _, ok := strings.Cut(v[1:], `'`)
		return s, ok
	case strings.HasPrefix(v, `"`):
		for i := 1; i < len(v); i++ {
			switch v[i] {
			case '\\':
				i++
			case '"':
				s, err := strconv.Unquote(v[:i+1])
				return s, err == nil
			}
		}
	}
	return "", false
}
