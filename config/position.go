package config

import (
	"strconv"
	"strings"
)

// BurntSushi/toml v1.6.0 records a position for each key, but only in an
// unexported field (MetaData.keyInfo), and keyed without array indexes, so the
// second [[virtual_server]] overwrites the first. Messages need the line of
// virtual_server[2].real_server[1].weight, so we index positions ourselves with
// the small scanner below. It only ever runs on text the toml parser has
// already accepted, which lets it stay simple; on anything else it still
// terminates and never panics, it just records less.

// seg is one step of a TOML path: a key name and, for an element of an array
// or array of tables, its 1-based index (0 for none).
type seg struct {
	name string
	idx  int
}

// pathString formats segs the way an operator writes them:
// virtual_server[2].real_server[1].weight. Names that are not bare keys are
// quoted.
func pathString(segs []seg) string {
	var b strings.Builder
	for i, s := range segs {
		if i > 0 {
			b.WriteByte('.')
		}
		if isBareKey(s.name) {
			b.WriteString(s.name)
		} else {
			b.WriteString(strconv.Quote(s.name))
		}
		if s.idx > 0 {
			b.WriteByte('[')
			b.WriteString(strconv.Itoa(s.idx))
			b.WriteByte(']')
		}
	}
	return b.String()
}

func isBareKey(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// keyPos is where one key, table header or array element was written.
type keyPos struct {
	segs  []seg
	line  int
	isKey bool // a key = value or a table header, rather than an array element
}

// positions maps paths to the 1-based line they were written on.
type positions struct {
	lines map[string]int
	keys  []keyPos // in file order
}

// lineOf returns the line of path, or of its nearest written ancestor (a
// missing key is reported at its table's header), or 0.
func (p *positions) lineOf(path string) int {
	for path != "" {
		if l, ok := p.lines[path]; ok {
			return l
		}
		cut := strings.LastIndexAny(path, ".[")
		if cut < 0 {
			break
		}
		path = path[:cut]
	}
	return 0
}

func (p *positions) add(segs []seg, line int, isKey bool) {
	segs = append([]seg(nil), segs...)
	p.keys = append(p.keys, keyPos{segs: segs, line: line, isKey: isKey})
	s := pathString(segs)
	if _, ok := p.lines[s]; !ok {
		p.lines[s] = line
	}
}

// indexPositions scans TOML text and records the line of every table header,
// key and array element.
func indexPositions(src []byte) *positions {
	s := &scanner{
		src:  src,
		line: 1,
		pos:  &positions{lines: make(map[string]int)},
		aot:  make(map[string]int),
	}
	s.document()
	return s.pos
}

type scanner struct {
	src  []byte
	i    int
	line int
	pos  *positions
	aot  map[string]int // path of an array of tables → elements seen so far
	cur  []seg          // the table that key = value lines belong to
}

func (s *scanner) eof() bool { return s.i >= len(s.src) }

func (s *scanner) peek(off int) byte {
	if s.i+off < len(s.src) {
		return s.src[s.i+off]
	}
	return 0
}

// skipSpace skips blanks within a line.
func (s *scanner) skipSpace() {
	for !s.eof() && (s.src[s.i] == ' ' || s.src[s.i] == '\t' || s.src[s.i] == '\r') {
		s.i++
	}
}

// skipBlank skips blanks, newlines and comments.
func (s *scanner) skipBlank() {
	for !s.eof() {
		switch s.src[s.i] {
		case ' ', '\t', '\r':
			s.i++
		case '\n':
			s.i++
			s.line++
		case '#':
			for !s.eof() && s.src[s.i] != '\n' {
				s.i++
			}
		default:
			return
		}
	}
}

func (s *scanner) document() {
	for !s.eof() {
		start := s.i
		s.skipBlank()
		if s.eof() {
			return
		}
		if s.src[s.i] == '[' {
			s.header()
		} else {
			s.keyValue(s.cur)
		}
		if s.i == start {
			s.i++ // not TOML; make progress anyway
		}
	}
}

// header handles [table] and [[array.of.tables]].
func (s *scanner) header() {
	line := s.line
	array := s.peek(1) == '['
	if array {
		s.i += 2
	} else {
		s.i++
	}
	names := s.key()
	s.skipSpace()
	for !s.eof() && s.src[s.i] == ']' {
		s.i++
	}
	if len(names) == 0 {
		return
	}
	// Each name resolves to the latest element when it names an array of
	// tables, as TOML says [[a.b]] and [a.b] refer to the last [[a]].
	segs := make([]seg, 0, len(names))
	for k, name := range names {
		next := append(segs, seg{name: name})
		p := pathString(next)
		if array && k == len(names)-1 {
			s.aot[p]++
			if _, ok := s.pos.lines[p]; !ok {
				s.pos.lines[p] = line
			}
		}
		next[len(next)-1].idx = s.aot[p]
		segs = next
		// [a.b] defines a implicitly, here, unless it was written earlier.
		if q := pathString(segs); s.pos.lines[q] == 0 {
			s.pos.lines[q] = line
		}
	}
	s.cur = segs
	s.pos.add(segs, line, true)
}

// keyValue handles key = value, relative to table.
func (s *scanner) keyValue(table []seg) {
	line := s.line
	names := s.key()
	if len(names) == 0 {
		return
	}
	path := make([]seg, 0, len(table)+len(names))
	path = append(path, table...)
	for _, n := range names {
		path = append(path, seg{name: n})
	}
	// a.b.c = 1 defines tables a and a.b implicitly, here.
	for k := len(table) + 1; k < len(path); k++ {
		if p := pathString(path[:k]); s.pos.lines[p] == 0 {
			s.pos.lines[p] = line
		}
	}
	s.pos.add(path, line, true)
	s.skipSpace()
	if !s.eof() && s.src[s.i] == '=' {
		s.i++
	}
	s.skipSpace()
	s.value(path)
}

// key reads a dotted key: bare, "basic" or 'literal' parts.
func (s *scanner) key() []string {
	var names []string
	for {
		s.skipSpace()
		if s.eof() {
			return names
		}
		switch c := s.src[s.i]; {
		case c == '"':
			raw := s.basicString()
			name, err := strconv.Unquote(`"` + raw + `"`)
			if err != nil {
				name = raw
			}
			names = append(names, name)
		case c == '\'':
			names = append(names, s.literalString())
		case isBareByte(c):
			start := s.i
			for !s.eof() && isBareByte(s.src[s.i]) {
				s.i++
			}
			names = append(names, string(s.src[start:s.i]))
		default:
			return names
		}
		s.skipSpace()
		if s.eof() || s.src[s.i] != '.' {
			return names
		}
		s.i++
	}
}

// isBareByte is deliberately generous: anything that cannot end or structure
// a key counts, so that the scanner follows whatever the toml parser accepted.
func isBareByte(c byte) bool {
	switch c {
	case ' ', '\t', '\r', '\n', '=', '.', '[', ']', '{', '}', ',', '#', '"', '\'':
		return false
	}
	return true
}

// basicString reads "..." and returns the text between the quotes, escapes
// left as written.
func (s *scanner) basicString() string {
	s.i++ // opening quote
	start := s.i
	for !s.eof() {
		switch s.src[s.i] {
		case '\\':
			s.i += 2
			continue
		case '"':
			raw := string(s.src[start:s.i])
			s.i++
			return raw
		case '\n':
			return string(s.src[start:s.i])
		}
		s.i++
	}
	return string(s.src[start:])
}

// literalString reads '...' and returns the text between the quotes.
func (s *scanner) literalString() string {
	s.i++
	start := s.i
	for !s.eof() {
		switch s.src[s.i] {
		case '\'':
			raw := string(s.src[start:s.i])
			s.i++
			return raw
		case '\n':
			return string(s.src[start:s.i])
		}
		s.i++
	}
	return string(s.src[start:])
}

// multiline skips a """...""" or ”'...”' string, counting its lines.
func (s *scanner) multiline(q byte) {
	s.i += 3
	for !s.eof() {
		c := s.src[s.i]
		switch {
		case c == '\\' && q == '"':
			if s.peek(1) == '\n' {
				s.line++
			}
			s.i += 2
			continue
		case c == '\n':
			s.line++
		case c == q && s.peek(1) == q && s.peek(2) == q:
			s.i += 3
			// Up to two more quotes belong to the content: """a""""" ends at the last.
			for n := 0; n < 2 && !s.eof() && s.src[s.i] == q; n++ {
				s.i++
			}
			return
		}
		s.i++
	}
}

// value skips one value, recording the positions of the keys and elements
// inside inline tables and arrays.
func (s *scanner) value(path []seg) {
	if s.eof() {
		return
	}
	switch c := s.src[s.i]; c {
	case '"', '\'':
		if s.peek(1) == c && s.peek(2) == c {
			s.multiline(c)
		} else if c == '"' {
			s.basicString()
		} else {
			s.literalString()
		}
	case '[':
		s.i++
		n := 0
		for !s.eof() {
			s.skipBlank()
			if s.eof() {
				return
			}
			switch s.src[s.i] {
			case ']':
				s.i++
				return
			case ',':
				s.i++
				continue
			}
			start := s.i
			n++
			elem := append([]seg(nil), path...)
			if len(elem) > 0 {
				elem[len(elem)-1].idx = n
			}
			s.pos.add(elem, s.line, false)
			s.value(elem)
			if s.i == start {
				s.i++
			}
		}
	case '{':
		s.i++
		for !s.eof() {
			s.skipBlank()
			if s.eof() {
				return
			}
			switch s.src[s.i] {
			case '}':
				s.i++
				return
			case ',':
				s.i++
				continue
			}
			start := s.i
			s.keyValue(path)
			if s.i == start {
				s.i++
			}
		}
	default:
		// Numbers, booleans, dates ("1979-05-27 07:32:00" has a space).
		for !s.eof() {
			switch s.src[s.i] {
			case ',', ']', '}', '\n', '#':
				return
			}
			s.i++
		}
	}
}

// Where returns "file:line" for the setting at field, a TOML path as operators write it
// ("dataplane.workers", "virtual_server[2].real_server[1].weight"): the line it was written on,
// or for a setting left out (its default applies) the line of its nearest written table, or the
// file alone when there is none.
func (c *Config) Where(field string) string {
	line := 0
	if c.pos != nil {
		line = c.pos.lineOf(field)
	}
	if line == 0 {
		return c.File
	}
	return c.File + ":" + strconv.Itoa(line)
}
