package objstore

// TestBucket exports the bucket checks to the external tests.
var TestBucket = testBucket
