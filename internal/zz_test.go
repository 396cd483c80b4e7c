package internal_test
import ("testing"; "github.com/twmb/franz-go/pkg/kfake"; _ "github.com/segmentio/kafka-go"; _ "github.com/go-kivik/kivik/v4/couchdb"; _ "github.com/prometheus/client_golang/prometheus"; _ "go.uber.org/goleak"; _ "github.com/stretchr/testify/require")
func TestX(t *testing.T){ c,err:=kfake.NewCluster(kfake.Ports(0)); if err!=nil{t.Fatal(err)}; t.Log(c.ListenAddrs()); c.Close() }
