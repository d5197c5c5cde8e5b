package logd

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/transparency-dev/tessera"
	tesseraaws "github.com/transparency-dev/tessera/storage/aws"
	awsas "github.com/transparency-dev/tessera/storage/aws/antispam"
	"github.com/transparency-dev/tessera/storage/posix"
	posixas "github.com/transparency-dev/tessera/storage/posix/antispam"

	"hvmon.dev/hvmon/internal/boundedfile"
)

// Connection pool sizes of the aws storage when the configuration gives
// none. The dedup index's pool must be bounded: unbounded, a burst of
// submissions exhausts the database's connections.
const (
	defaultMaxOpenConns         = 16
	defaultAntispamMaxOpenConns = 32
)

// openStorage opens the configured driver and its persistent dedup index.
func openStorage(ctx context.Context, cfg *Config, hc *http.Client, getenv func(string) string) (tessera.Driver, tessera.Antispam, error) {
	if p := cfg.POSIX; p != nil {
		drv, err := posix.New(ctx, posix.Config{Path: p.Dir, HTTPClient: hc})
		if err != nil {
			return nil, nil, fmt.Errorf("posix storage %s: %w", p.Dir, err)
		}
		dir := p.AntispamDir
		if dir == "" {
			dir = p.Dir + "/.antispam"
		}
		as, err := posixas.NewAntispam(ctx, dir, posixas.AntispamOpts{})
		if err != nil {
			return nil, nil, fmt.Errorf("dedup index %s: %w", dir, err)
		}
		return drv, as, nil
	}
	a := cfg.AWS
	dc := tesseraaws.Config{Bucket: a.Bucket, DSN: a.DSN, MaxOpenConns: cmpOr(a.MaxOpenConns, defaultMaxOpenConns), HTTPClient: hc}
	dc.MaxIdleConns = max(dc.MaxOpenConns/4, 1)
	if a.Endpoint != "" {
		// An S3-compatible server other than AWS: static credentials from
		// the environment, path-style addressing, and checksums only where
		// the protocol requires them.
		id, err := secret(getenv, "HVMON_S3_ACCESS_KEY")
		if err != nil {
			return nil, nil, err
		}
		key, err := secret(getenv, "HVMON_S3_SECRET_KEY")
		if err != nil {
			return nil, nil, err
		}
		region := cmpOr(a.Region, "us-east-1")
		pathStyle := a.PathStyle == nil || *a.PathStyle
		dc.SDKConfig = &aws.Config{Region: region}
		dc.S3Options = func(o *s3.Options) {
			o.BaseEndpoint = aws.String(a.Endpoint)
			o.Credentials = credentials.NewStaticCredentialsProvider(id, key, "")
			o.Region = region
			o.UsePathStyle = pathStyle
			o.RequestChecksumCalculation = aws.RequestChecksumCalculationWhenRequired
			o.ResponseChecksumValidation = aws.ResponseChecksumValidationWhenRequired
		}
	}
	drv, err := tesseraaws.New(ctx, dc)
	if err != nil {
		return nil, nil, fmt.Errorf("aws storage: %w", err)
	}
	n := cmpOr(a.AntispamMaxOpenConns, defaultAntispamMaxOpenConns)
	as, err := awsas.NewAntispam(ctx, a.AntispamDSN, awsas.AntispamOpts{MaxOpenConns: n, MaxIdleConns: max(n/4, 1)})
	if err != nil {
		return nil, nil, fmt.Errorf("aws dedup index: %w", err)
	}
	return drv, as, nil
}

// secret reads a credential from the environment variable name, or from
// the file named by name_FILE.
func secret(getenv func(string) string, name string) (string, error) {
	if v := getenv(name); v != "" {
		return v, nil
	}
	f := getenv(name + "_FILE")
	if f == "" {
		return "", fmt.Errorf("aws storage: set %s or %s_FILE", name, name)
	}
	b, err := boundedfile.Read(f, 4096)
	if err != nil {
		return "", fmt.Errorf("aws storage: %s_FILE: %w", name, err)
	}
	v := strings.TrimSpace(string(b))
	if v == "" {
		return "", errors.New("aws storage: " + name + "_FILE is empty")
	}
	return v, nil
}

func cmpOr[T comparable](v, fallback T) T {
	var zero T
	if v == zero {
		return fallback
	}
	return v
}
