package ha

import "fmt"

var fmtSprintf = fmt.Sprintf
