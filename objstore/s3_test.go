package objstore_test

import (
	"context"
	"net/http/httptest"
	"testing"

	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"

	"github.com/verge-edge/verge/objstore"
)

// TestS3Bucket runs the bucket checks against an S3-compatible server on loopback
// (gofakes3, an in-memory S3 implementation), through the SigV4-signing client.
func TestS3Bucket(t *testing.T) {
	srv := httptest.NewServer(gofakes3.New(s3mem.New()).Server())
	t.Cleanup(srv.Close)
	b, err := objstore.OpenS3(objstore.S3Options{Endpoint: srv.URL, Region: "us-east-1", Bucket: "verge-test",
		AccessKey: "AKIDTEST", SecretKey: "secret", PathStyle: true, SpoolDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.CreateRemoteBucket(context.Background()); err != nil {
		t.Fatal(err)
	}
	objstore.TestBucket(t, b, true)
}
