// Command pki makes the certificates, keys and kubeconfig of the local test
// control plane (scripts/control-plane.sh), so that nothing but Go is needed.
//
// It writes into -dir, and never overwrites a file that is already there:
//
//	ca.crt, ca.key                 the cluster CA (ECDSA P-256, 10 years)
//	apiserver.crt, apiserver.key   kube-apiserver's serving certificate
//	admin.crt, admin.key           client certificate CN=kubernetes-admin, O=system:masters
//	sa.key, sa.pub                 service-account token signing key pair
//	admin.kubeconfig               kubeconfig for -server with the admin certificate
//
// admin.kubeconfig is rewritten on every run (the server URL may change). The files are for tests on loopback only.
package main

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha1"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"
)

const validity = 10 * 365 * 24 * time.Hour

func main() {
	dir := flag.String("dir", "", "output directory (required)")
	hosts := flag.String("hosts", "127.0.0.1,localhost,10.96.0.1,kubernetes,kubernetes.default,kubernetes.default.svc,kubernetes.default.svc.cluster.local",
		"comma-separated IPs and DNS names of kube-apiserver's serving certificate")
	server := flag.String("server", "https://127.0.0.1:6443", "kube-apiserver URL written into admin.kubeconfig")
	flag.Parse()
	if *dir == "" || flag.NArg() != 0 {
		fmt.Fprintln(os.Stderr, "usage: pki -dir DIR [-hosts LIST] [-server URL]")
		os.Exit(2)
	}
	if err := run(*dir, strings.Split(*hosts, ","), *server); err != nil {
		fmt.Fprintln(os.Stderr, "pki:", err)
		os.Exit(1)
	}
}

func run(dir string, hosts []string, server string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	p := func(name string) string { return filepath.Join(dir, name) }

	caKey, err := loadOrCreateKey(p("ca.key"))
	if err != nil {
		return err
	}
	caCert, err := loadOrCreateCert(p("ca.crt"), caKey, nil, nil, &x509.Certificate{
		Subject:               pkix.Name{CommonName: "kube-nftpolicy-test-ca"},
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	})
	if err != nil {
		return err
	}

	serving := &x509.Certificate{
		Subject:     pkix.Name{CommonName: "kube-apiserver"},
		KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, h := range hosts {
		h = strings.TrimSpace(h)
		if h == "" {
			continue
		}
		if ip := net.ParseIP(h); ip != nil {
			serving.IPAddresses = append(serving.IPAddresses, ip)
		} else {
			serving.DNSNames = append(serving.DNSNames, h)
		}
	}
	if err := leaf(p("apiserver"), caCert, caKey, serving); err != nil {
		return err
	}
	if err := leaf(p("admin"), caCert, caKey, &x509.Certificate{
		Subject:     pkix.Name{CommonName: "kubernetes-admin", Organization: []string{"system:masters"}},
		KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}); err != nil {
		return err
	}

	saKey, err := loadOrCreateKey(p("sa.key"))
	if err != nil {
		return err
	}
	if !exists(p("sa.pub")) {
		der, err := x509.MarshalPKIXPublicKey(saKey.Public())
		if err != nil {
			return err
		}
		if err := writePEM(p("sa.pub"), "PUBLIC KEY", der, 0o644); err != nil {
			return err
		}
	}

	// Always rewritten: the server URL may have changed.
	return writeKubeconfig(p("admin.kubeconfig"), server, p("ca.crt"), p("admin.crt"), p("admin.key"))
}

func leaf(base string, caCert *x509.Certificate, caKey *ecdsa.PrivateKey, tmpl *x509.Certificate) error {
	key, err := loadOrCreateKey(base + ".key")
	if err != nil {
		return err
	}
	_, err = loadOrCreateCert(base+".crt", key, caCert, caKey, tmpl)
	return err
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

func loadOrCreateKey(path string) (*ecdsa.PrivateKey, error) {
	if b, err := os.ReadFile(path); err == nil {
		blk, _ := pem.Decode(b)
		if blk == nil {
			return nil, fmt.Errorf("%s: no PEM block", path)
		}
		k, err := x509.ParseECPrivateKey(blk.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		return k, nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	der, err := x509.MarshalECPrivateKey(k)
	if err != nil {
		return nil, err
	}
	return k, writePEM(path, "EC PRIVATE KEY", der, 0o600)
}

// loadOrCreateCert returns the certificate at path, or signs tmpl for key
// with parent/parentKey (self-signed when parent is nil) and writes it.
func loadOrCreateCert(path string, key *ecdsa.PrivateKey, parent *x509.Certificate, parentKey crypto.Signer, tmpl *x509.Certificate) (*x509.Certificate, error) {
	if b, err := os.ReadFile(path); err == nil {
		blk, _ := pem.Decode(b)
		if blk == nil {
			return nil, fmt.Errorf("%s: no PEM block", path)
		}
		return x509.ParseCertificate(blk.Bytes)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, err
	}
	pubDER, err := x509.MarshalPKIXPublicKey(key.Public())
	if err != nil {
		return nil, err
	}
	ski := sha1.Sum(pubDER)
	t := *tmpl
	t.SerialNumber = serial
	t.NotBefore = time.Now().Add(-time.Hour)
	t.NotAfter = time.Now().Add(validity)
	t.SubjectKeyId = ski[:]
	if parent == nil {
		parent, parentKey = &t, key
	}
	der, err := x509.CreateCertificate(rand.Reader, &t, parent, key.Public(), parentKey)
	if err != nil {
		return nil, err
	}
	if err := writePEM(path, "CERTIFICATE", der, 0o644); err != nil {
		return nil, err
	}
	return x509.ParseCertificate(der)
}

func writePEM(path, typ string, der []byte, mode os.FileMode) error {
	return writeFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), mode)
}

// writeFile writes through a temporary file and a rename, so that a reader
// never sees half a file.
func writeFile(path string, data []byte, mode os.FileMode) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, mode); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

func writeKubeconfig(path, server, ca, cert, key string) error {
	b64 := func(p string) (string, error) {
		b, err := os.ReadFile(p)
		return base64.StdEncoding.EncodeToString(b), err
	}
	caB, err := b64(ca)
	if err != nil {
		return err
	}
	certB, err := b64(cert)
	if err != nil {
		return err
	}
	keyB, err := b64(key)
	if err != nil {
		return err
	}
	cfg := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: local
  cluster:
    server: %s
    certificate-authority-data: %s
users:
- name: admin
  user:
    client-certificate-data: %s
    client-key-data: %s
contexts:
- name: admin@local
  context:
    cluster: local
    user: admin
current-context: admin@local
`, server, caB, certB, keyB)
	return writeFile(path, []byte(cfg), 0o600)
}
