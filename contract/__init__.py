"""The Avro entity contract shared with other services: schemas, their versions and the wire codec."""
