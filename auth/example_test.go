package auth_test

import (
	"context"
	"encoding/base64"
	"fmt"
	"net/netip"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/verge-edge/verge/auth"
	"github.com/verge-edge/verge/message"
)

// A Checker in a program's own Request phase: answer the denial, or go on with the user.
func ExampleBasic() {
	hash, _ := bcrypt.GenerateFromPassword([]byte("s3cret"), bcrypt.MinCost)
	check := auth.NewBasic(auth.BasicConfig{Realm: "staff", Users: map[string]string{"alice": string(hash)}, UserHeader: "X-User"})

	req := &message.Request{Method: "GET", Target: "/", Authority: "example.com"}
	req.Header.Add("Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte("alice:s3cret")))
	req.Header.Add("X-User", "root") // forged: removed before the check
	user, deny := check.Check(context.Background(), req, netip.MustParseAddr("192.0.2.1"))
	fmt.Println(user, deny == nil, req.Header.Get("X-User"))

	req.Header.Set("Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte("alice:guess")))
	_, deny = check.Check(context.Background(), req, netip.Addr{})
	fmt.Println(deny.Status, deny.Header.Get("WWW-Authenticate"))
	// Output:
	// alice true alice
	// 401 Basic realm="staff", charset="UTF-8"
}

func ExampleCORS_Allowed() {
	c := auth.NewCORS(auth.CORSConfig{AllowOrigins: []string{"https://*.example.com"}, AllowMethods: []string{"GET"}, MaxAge: time.Minute})
	for _, o := range []string{"https://app.example.com", "https://example.com", "https://app.example.com.evil.test"} {
		fmt.Println(o, c.Allowed(o))
	}
	// Output:
	// https://app.example.com true
	// https://example.com false
	// https://app.example.com.evil.test false
}
