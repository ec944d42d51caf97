// credsgen: NATS decentralized-auth material for integration.fleet.tls, made with Debian's
// nats-io/jwt and nkeys (the libraries NATS's own nsc tool is built on).
//
//	credsgen DIR
//
// writes into DIR:
//   - auth.conf: the nats-server settings of an operator-mode server (operator JWT, system
//     account, an in-memory resolver preloaded with the accounts) to include in its config;
//   - entd.creds: a user of account ENTD (JetStream enabled, unlimited);
//   - stranger.creds: a user signed by an account the server does not know;
//   - revoked.creds: a user of ENTD whose JWT the account revoked.
package main

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nkeys"
)

func must(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, "credsgen:", err)
		os.Exit(1)
	}
}

func account(okp nkeys.KeyPair, name string, js bool) (nkeys.KeyPair, string, *jwt.AccountClaims) {
	kp, err := nkeys.CreateAccount()
	must(err)
	pub, err := kp.PublicKey()
	must(err)
	ac := jwt.NewAccountClaims(pub)
	ac.Name = name
	if js {
		ac.Limits.JetStreamLimits = jwt.JetStreamLimits{MemoryStorage: -1, DiskStorage: -1,
			Streams: -1, Consumer: -1}
	}
	return kp, pub, ac
}

func user(akp nkeys.KeyPair, name string) (string, []byte) {
	kp, err := nkeys.CreateUser()
	must(err)
	pub, err := kp.PublicKey()
	must(err)
	seed, err := kp.Seed()
	must(err)
	uc := jwt.NewUserClaims(pub)
	uc.Name = name
	token, err := uc.Encode(akp)
	must(err)
	creds, err := jwt.FormatUserConfig(token, seed)
	must(err)
	return pub, creds
}

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: credsgen DIR")
		os.Exit(2)
	}
	dir := os.Args[1]
	okp, err := nkeys.CreateOperator()
	must(err)
	opub, err := okp.PublicKey()
	must(err)

	_, spub, sac := account(okp, "SYS", false)
	akp, apub, aac := account(okp, "ENTD", true)
	xkp, _, _ := account(okp, "STRANGER", true) // never given to the server

	_, good := user(akp, "entd")
	rpub, revoked := user(akp, "revoked")
	_, stranger := user(xkp, "stranger")
	// Revoke every JWT of that user issued up to now (the account JWT says so).
	aac.Revoke(rpub)

	oc := jwt.NewOperatorClaims(opub)
	oc.Name = "entd-test"
	oc.SystemAccount = spub
	otok, err := oc.Encode(okp)
	must(err)
	stok, err := sac.Encode(okp)
	must(err)
	atok, err := aac.Encode(okp)
	must(err)

	conf := fmt.Sprintf("operator: %s\nsystem_account: %s\nresolver: MEMORY\n"+
		"resolver_preload: {\n  %s: %s\n  %s: %s\n}\n", otok, spub, spub, stok, apub, atok)
	must(os.WriteFile(filepath.Join(dir, "auth.conf"), []byte(conf), 0o600))
	must(os.WriteFile(filepath.Join(dir, "entd.creds"), good, 0o600))
	must(os.WriteFile(filepath.Join(dir, "stranger.creds"), stranger, 0o600))
	must(os.WriteFile(filepath.Join(dir, "revoked.creds"), revoked, 0o600))
}
