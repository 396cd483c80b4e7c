package kafkatest

import (
	"bytes"
	"crypto/cipher"
	"crypto/des"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/md5"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"slices"
	"time"
)

// testCerts is a throw-away certificate authority and a server
// certificate it signed for 127.0.0.1 and localhost.
type testCerts struct {
	caPEM     []byte // the CA certificate
	serverPEM []byte // the server's private key (PKCS #8) and certificate chain
	server    tls.Certificate
	pool      *x509.CertPool
	keyDER    []byte // the server's private key, PKCS #8
}

func newTestCerts() (*testCerts, error) {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	ca := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: "kafkatest CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(7 * 24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, &caKey.PublicKey, caKey)
	if err != nil {
		return nil, err
	}
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		return nil, err
	}

	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	leaf := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: "127.0.0.1"},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(7 * 24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
		DNSNames:     []string{"localhost"},
	}
	leafDER, err := x509.CreateCertificate(rand.Reader, leaf, caCert, &key.PublicKey, caKey)
	if err != nil {
		return nil, err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	c := &testCerts{
		caPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}),
		server: tls.Certificate{
			Certificate: [][]byte{leafDER, caDER},
			PrivateKey:  key,
		},
		pool:   x509.NewCertPool(),
		keyDER: keyDER,
	}
	c.pool.AddCert(caCert)
	// Kafka's PEM key store: an unencrypted PKCS #8 key, then the chain.
	c.serverPEM = append(c.serverPEM, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})...)
	c.serverPEM = append(c.serverPEM, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: leafDER})...)
	c.serverPEM = append(c.serverPEM, c.caPEM...)
	return c, nil
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		panic(fmt.Sprintf("kafkatest: crypto/rand: %v", err))
	}
	return n
}

// clientConfig trusts the test CA only.
func (c *testCerts) clientConfig() *tls.Config {
	return &tls.Config{RootCAs: c.pool, MinVersion: tls.VersionTLS12}
}

// serverConfig serves the test certificate (for kfake).
func (c *testCerts) serverConfig() *tls.Config {
	return &tls.Config{Certificates: []tls.Certificate{c.server}, MinVersion: tls.VersionTLS12}
}

// writeKeyStore writes the server's PEM key store for Kafka.
func (c *testCerts) writeKeyStore(path string) error {
	return os.WriteFile(path, c.serverPEM, 0o600)
}

// writeEncryptedKeyStore writes the server's PEM key store with its key
// encrypted under password, for Apache Kafka before 2.8, which refuses a
// PEM key store without ssl.key.password (it decrypts the key with Java's
// EncryptedPrivateKeyInfo). The scheme is PKCS #5's PBEWithMD5AndDES,
// which every JRE decrypts and which takes a few lines here: weak, and
// enough for a throw-away key in a test's temporary directory.
func (c *testCerts) writeEncryptedKeyStore(path, password string) error {
	salt := make([]byte, 8)
	if _, err := rand.Read(salt); err != nil {
		return err
	}
	const iterations = 2048
	// PBKDF1 with MD5: the DES key and the IV.
	dk := md5.Sum(append([]byte(password), salt...))
	for range iterations - 1 {
		dk = md5.Sum(dk[:])
	}
	block, err := des.NewCipher(dk[:8])
	if err != nil {
		return err
	}
	pad := 8 - len(c.keyDER)%8
	data := append(slices.Clone(c.keyDER), bytes.Repeat([]byte{byte(pad)}, pad)...)
	cipher.NewCBCEncrypter(block, dk[8:]).CryptBlocks(data, data)
	type pbeParameter struct {
		Salt       []byte
		Iterations int
	}
	type algorithm struct {
		OID    asn1.ObjectIdentifier
		Params pbeParameter
	}
	type encryptedPrivateKeyInfo struct {
		Algorithm algorithm
		Data      []byte
	}
	der, err := asn1.Marshal(encryptedPrivateKeyInfo{
		Algorithm: algorithm{OID: asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 5, 3}, Params: pbeParameter{salt, iterations}},
		Data:      data,
	})
	if err != nil {
		return err
	}
	out := pem.EncodeToMemory(&pem.Block{Type: "ENCRYPTED PRIVATE KEY", Bytes: der})
	out = append(out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.server.Certificate[0]})...)
	out = append(out, c.caPEM...)
	return os.WriteFile(path, out, 0o600)
}
