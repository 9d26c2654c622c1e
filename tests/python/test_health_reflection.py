"""gRPC health checking and server reflection, through the standard Python
clients (grpcio-health-checking, grpcio-reflection)."""

import grpc
from google.protobuf.descriptor_pool import DescriptorPool
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)


def test_health_reports_serving_for_the_server_and_the_job_service(server):
    address, _ = server
    with grpc.insecure_channel(address) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for service in ["", "batchops.v1.JobService"]:
            reply = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=10)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING, service
        try:
            health.Check(health_pb2.HealthCheckRequest(service="no.such.Service"), timeout=10)
            raise AssertionError("an unknown service must not be reported")
        except grpc.RpcError as error:
            assert error.code() == grpc.StatusCode.NOT_FOUND


def test_reflection_describes_the_job_service(server):
    address, _ = server
    with grpc.insecure_channel(address) as channel:
        pool = DescriptorPool(ProtoReflectionDescriptorDatabase(channel))
        service = pool.FindServiceByName("batchops.v1.JobService")
        methods = {method.name for method in service.methods}
        assert {"CreateJob", "DescribeJob", "ListJobs", "UpdateJobStatus", "WatchJobs", "GetJobHistory"} <= methods
        create = pool.FindMessageTypeByName("batchops.v1.CreateJobRequest")
        assert "client_request_token" in create.fields_by_name
        # Imports resolve too.
        job = pool.FindMessageTypeByName("batchops.v1.JobDescriptor")
        assert job.fields_by_name["create_time"].message_type.full_name == "google.protobuf.Timestamp"
        # Health checking is described as well, so generic tools can call it.
        health = pool.FindServiceByName("grpc.health.v1.Health")
        assert {"Check", "Watch"} <= {method.name for method in health.methods}
