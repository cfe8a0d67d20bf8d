// Package v20170312 is a stub of the Tencent Cloud VPC API client with just
// the names flannel's tencent-vpc backend uses. Every call fails with
// ErrUnavailable. See ../go.mod for why it exists.
package v20170312

import "errors"

// ErrUnavailable is returned by every call of the stub client.
var ErrUnavailable = errors.New("tencent-vpc backend is not built into this flanneld (test build with a stub SDK)")

// Client is the stub client; a nil *Client is usable.
type Client struct{}

// NewClientWithSecretId returns a client whose calls all fail.
func NewClientWithSecretId(secretID, secretKey, region string) (*Client, error) {
	return &Client{}, ErrUnavailable
}

// Filter filters a Describe call.
type Filter struct {
	Name   *string
	Values []*string
}

// Route is one route of a route table.
type Route struct {
	DestinationCidrBlock *string
	GatewayType          *string
	GatewayId            *string
	RouteId              *uint64
	RouteDescription     *string
	Enabled              *bool
	RouteType            *string
	RouteTableId         *string
}

// RouteTable is a VPC route table.
type RouteTable struct {
	VpcId          *string
	RouteTableId   *string
	RouteTableName *string
	RouteSet       []*Route
}

// DescribeRouteTablesRequest asks for route tables.
type DescribeRouteTablesRequest struct {
	Filters []*Filter
}

// NewDescribeRouteTablesRequest returns an empty request.
func NewDescribeRouteTablesRequest() *DescribeRouteTablesRequest {
	return &DescribeRouteTablesRequest{}
}

// DescribeRouteTablesResponse answers DescribeRouteTables.
type DescribeRouteTablesResponse struct {
	Response *struct {
		TotalCount    *uint64
		RouteTableSet []*RouteTable
		RequestId     *string
	}
}

// DescribeRouteTables always fails.
func (c *Client) DescribeRouteTables(*DescribeRouteTablesRequest) (*DescribeRouteTablesResponse, error) {
	return nil, ErrUnavailable
}

// DeleteRoutesRequest deletes routes.
type DeleteRoutesRequest struct {
	RouteTableId *string
	Routes       []*Route
}

// NewDeleteRoutesRequest returns an empty request.
func NewDeleteRoutesRequest() *DeleteRoutesRequest { return &DeleteRoutesRequest{} }

// DeleteRoutesResponse answers DeleteRoutes.
type DeleteRoutesResponse struct{}

// DeleteRoutes always fails.
func (c *Client) DeleteRoutes(*DeleteRoutesRequest) (*DeleteRoutesResponse, error) {
	return nil, ErrUnavailable
}

// CreateRoutesRequest creates routes.
type CreateRoutesRequest struct {
	RouteTableId *string
	Routes       []*Route
}

// NewCreateRoutesRequest returns an empty request.
func NewCreateRoutesRequest() *CreateRoutesRequest { return &CreateRoutesRequest{} }

// CreateRoutesResponse answers CreateRoutes.
type CreateRoutesResponse struct{}

// CreateRoutes always fails.
func (c *Client) CreateRoutes(*CreateRoutesRequest) (*CreateRoutesResponse, error) {
	return nil, ErrUnavailable
}
