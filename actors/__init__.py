"""Ray actors: the Supervisor, one TenantActor per tenant, EquipmentActors hosting entities."""
