package auth

import (
	"testing"

	"google.golang.org/grpc"

	sluicev1 "github.com/sluice-lb/sluice/proto/sluice/v1"
)

// TestEveryMethodHasARole fails when an RPC is added to the operator API
// without deciding which role may call it (until then only admins may).
func TestEveryMethodHasARole(t *testing.T) {
	for _, sd := range []grpc.ServiceDesc{sluicev1.ConfigService_ServiceDesc, sluicev1.AuthService_ServiceDesc} {
		if classify("/"+sd.ServiceName+"/X") != apiOperator {
			t.Errorf("%s is not classified as operator API", sd.ServiceName)
		}
		for _, m := range sd.Methods {
			name := "/" + sd.ServiceName + "/" + m.MethodName
			if _, ok := roles[name]; !ok {
				t.Errorf("%s has no role in roles", name)
			}
		}
		for _, m := range sd.Streams {
			name := "/" + sd.ServiceName + "/" + m.StreamName
			if _, ok := roles[name]; !ok {
				t.Errorf("%s has no role in roles", name)
			}
		}
	}
	for _, sd := range []grpc.ServiceDesc{sluicev1.DiscoveryService_ServiceDesc, sluicev1.StatsService_ServiceDesc, sluicev1.CommandService_ServiceDesc,
		sluicev1.NodeCertService_ServiceDesc} {
		if classify("/"+sd.ServiceName+"/X") != apiNode {
			t.Errorf("%s is not classified as node API", sd.ServiceName)
		}
	}
	if r, audited := required("/sluice.v1.ConfigService/SomethingNew", nil); r != sluicev1.Role_ROLE_ADMIN || !audited {
		t.Errorf("an unknown method needs %v (audited %v), want admin, audited", r, audited)
	}
}
