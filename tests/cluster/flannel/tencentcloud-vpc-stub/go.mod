// Stand-in for the Tencent Cloud VPC SDK, which the Go module proxy does not
// serve (403 "This module version is not available" for every version).
// flanneld imports it only for its tencent-vpc backend; the test cluster uses
// the vxlan/host-gw backends, and this stub makes the tencent one fail cleanly.
module github.com/tencentcloud/tencentcloud-sdk-go/tencentcloud/vpc

go 1.22
