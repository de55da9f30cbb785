package health

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// httpChecker is kinds http and https: a GET on a fresh connection (no keep-alive, so every check
// proves the server still accepts connections), redirects not followed (a 3xx is a status like
// any other), no proxy from the environment.
type httpChecker struct {
	client *http.Client
	url    string
	host   string
	status []int
	body   *regexp.Regexp
}

func newHTTPChecker(spec Spec, addr netip.AddrPort, dial DialFunc) *httpChecker {
	scheme := "http"
	tr := &http.Transport{
		DialContext:            dial,
		DisableKeepAlives:      true,
		MaxResponseHeaderBytes: MaxBody,
	}
	if spec.Kind == KindHTTPS {
		scheme = "https"
		name := spec.SNI
		if name == "" && spec.Host != "" {
			name = spec.Host
			if h, _, err := net.SplitHostPort(spec.Host); err == nil {
				name = h
			}
		}
		// Like keepalived's SSL_GET, the default is to encrypt without verifying: real servers
		// mostly have certificates for the service name, not for the address checked.
		tr.TLSClientConfig = &tls.Config{ServerName: name, InsecureSkipVerify: !spec.TLSVerify}
	}
	path := spec.Path
	if path == "" {
		path = "/"
	}
	c := &httpChecker{
		client: &http.Client{
			Transport:     tr,
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
		url:    scheme + "://" + addr.String() + path,
		host:   spec.Host,
		status: spec.ExpectStatus,
	}
	if spec.ExpectBody != "" {
		c.body = regexp.MustCompile(spec.ExpectBody) // Validate compiled it
	}
	return c
}

func (c *httpChecker) Check(ctx context.Context) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.url, nil)
	if err != nil {
		return fmt.Errorf("GET %s: %v", c.url, err)
	}
	if c.host != "" {
		req.Host = c.host
	}
	req.Header.Set("User-Agent", "govs-health-check")
	resp, err := c.client.Do(req)
	if err != nil {
		return describe(ctx, "GET "+c.url, unwrapURL(err))
	}
	defer resp.Body.Close()
	if !c.statusOK(resp.StatusCode) {
		return fmt.Errorf("GET %s: status %d, want %s", c.url, resp.StatusCode, c.wantStatus())
	}
	if c.body == nil {
		return nil
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, MaxBody))
	if err != nil && !c.body.Match(body) {
		return describe(ctx, "GET "+c.url+": read the body", err)
	}
	if !c.body.Match(body) {
		return fmt.Errorf("GET %s: body %s does not match %q", c.url, excerpt(body), c.body)
	}
	return nil
}

func (c *httpChecker) statusOK(code int) bool {
	if len(c.status) == 0 {
		return code >= 200 && code <= 299
	}
	return slices.Contains(c.status, code)
}

func (c *httpChecker) wantStatus() string {
	if len(c.status) == 0 {
		return "2xx"
	}
	s := make([]string, len(c.status))
	for i, code := range c.status {
		s[i] = strconv.Itoa(code)
	}
	return strings.Join(s, " or ")
}

// unwrapURL drops *url.Error's repetition of the method and URL, which the message already has.
func unwrapURL(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}
