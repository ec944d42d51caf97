// objinterop: the reference NATS client (nats.go, Debian golang-github-nats-io-go-nats-dev) on
// the object-store layout that src/sync/objstore.c writes and reads. Used by
// tests/integration/fleet/test_snapshot.py to prove the two interoperate in both directions.
//
//	objinterop info   URL BUCKET NAME           print ObjectInfo as JSON
//	objinterop get    URL BUCKET NAME FILE      download (nats.go checks the digest)
//	objinterop put    URL BUCKET NAME FILE [K=V...]   upload with object headers
//	objinterop tamper URL BUCKET NAME           republish the meta with a wrong digest
//	objinterop stream URL BUCKET                print the bucket stream's config as JSON
//	objinterop purge  URL STREAM SEQ            purge STREAM below SEQ (as retention would)
//	objinterop rmstream URL STREAM              delete STREAM
package main

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"strings"

	"github.com/nats-io/nats.go"
)

func die(f string, a ...interface{}) {
	fmt.Fprintf(os.Stderr, "objinterop: "+f+"\n", a...)
	os.Exit(1)
}

func main() {
	if len(os.Args) < 4 {
		die("usage: objinterop info|get|put|tamper|stream URL BUCKET [NAME [FILE]]")
	}
	cmd, url, bucket := os.Args[1], os.Args[2], os.Args[3]
	nc, err := nats.Connect(url)
	if err != nil {
		die("connect: %v", err)
	}
	defer nc.Close()
	js, err := nc.JetStream()
	if err != nil {
		die("jetstream: %v", err)
	}
	if cmd == "purge" {
		if len(os.Args) < 5 {
			die("SEQ required")
		}
		var seq uint64
		if _, err := fmt.Sscan(os.Args[4], &seq); err != nil {
			die("SEQ: %v", err)
		}
		if err := js.PurgeStream(bucket, &nats.StreamPurgeRequest{Sequence: seq}); err != nil {
			die("purge: %v", err)
		}
		return
	}
	if cmd == "rmstream" {
		if err := js.DeleteStream(bucket); err != nil {
			die("delete stream: %v", err)
		}
		return
	}
	if cmd == "stream" {
		si, err := js.StreamInfo("OBJ_" + bucket)
		if err != nil {
			die("stream info: %v", err)
		}
		out, _ := json.Marshal(si.Config)
		fmt.Println(string(out))
		return
	}
	if len(os.Args) < 5 {
		die("NAME required")
	}
	name := os.Args[4]
	var obs nats.ObjectStore
	if cmd == "put" {
		obs, err = js.ObjectStore(bucket)
		if err == nats.ErrStreamNotFound {
			obs, err = js.CreateObjectStore(&nats.ObjectStoreConfig{Bucket: bucket})
		}
	} else {
		obs, err = js.ObjectStore(bucket)
	}
	if err != nil {
		die("object store %s: %v", bucket, err)
	}
	switch cmd {
	case "info":
		info, err := obs.GetInfo(name)
		if err != nil {
			die("info: %v", err)
		}
		out, _ := json.Marshal(info)
		fmt.Println(string(out))
	case "get":
		if len(os.Args) < 6 {
			die("FILE required")
		}
		data, err := obs.GetBytes(name)
		if err != nil {
			die("get: %v", err)
		}
		if err := os.WriteFile(os.Args[5], data, 0o644); err != nil {
			die("write: %v", err)
		}
	case "put":
		if len(os.Args) < 6 {
			die("FILE required")
		}
		f, err := os.Open(os.Args[5])
		if err != nil {
			die("open: %v", err)
		}
		defer f.Close()
		meta := &nats.ObjectMeta{Name: name, Headers: nats.Header{}}
		for _, kv := range os.Args[6:] {
			p := strings.SplitN(kv, "=", 2)
			if len(p) == 2 {
				meta.Headers.Set(p[0], p[1])
			}
		}
		info, err := obs.Put(meta, f)
		if err != nil {
			die("put: %v", err)
		}
		out, _ := json.Marshal(info)
		fmt.Println(string(out))
	case "tamper":
		info, err := obs.GetInfo(name)
		if err != nil {
			die("info: %v", err)
		}
		sum := sha256.Sum256([]byte("not the object"))
		info.Digest = "SHA-256=" + base64.URLEncoding.EncodeToString(sum[:])
		data, _ := json.Marshal(info)
		m := nats.NewMsg("$O." + bucket + ".M." + base64.URLEncoding.EncodeToString([]byte(name)))
		m.Header.Set(nats.MsgRollup, nats.MsgRollupSubject)
		m.Data = data
		if _, err := js.PublishMsg(m); err != nil {
			die("publish: %v", err)
		}
	default:
		die("unknown command %s", cmd)
	}
}
