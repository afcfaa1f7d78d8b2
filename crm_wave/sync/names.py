"""One name per concept: dataset, table and asset names derived from the entity stems."""

from __future__ import annotations

from crm_wave.mapping.flows import CRM_RESOURCE, ENTITIES, WAVE_ENTITY

__all__ = ["ENTITIES", "CRM_RESOURCE", "WAVE_ENTITY", "dataset", "global_table", "share_table", "namespaced"]


def dataset(system: str, entity: str) -> str:
    """Collected dataset of `entity` (stem) in `system`: crm_customer, wave_invoice, ..."""
    return f"{system}_{WAVE_ENTITY[entity] if system == 'wave' else entity}"


def global_table(entity: str) -> str:
    """Golden records of an entity stem: global_customer, global_product, global_order."""
    return f"global_{entity}"


def share_table(target: str, entity: str) -> str:
    """What must change in `target`: wave_customer_share, crm_order_share, ..."""
    return f"{dataset(target, entity)}_share"


def namespaced(system: str, entity: str, source_id: str) -> str:
    """Namespaced id of a record, e.g. crm-customer:C1, wave-invoice:<id>."""
    return f"{dataset(system, entity).replace('_', '-')}:{source_id}"
