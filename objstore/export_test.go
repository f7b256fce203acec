package objstore

import (
	"context"

	"github.com/minio/minio-go/v7"
)

// TestBucket exports the bucket checks to the external tests.
var TestBucket = testBucket

// CreateRemoteBucket creates the S3 bucket (the tests' server starts empty).
func (b *S3Bucket) CreateRemoteBucket(ctx context.Context) error {
	return b.c.Client.MakeBucket(ctx, b.o.Bucket, minio.MakeBucketOptions{Region: b.o.Region})
}
