"""The core every room stands on: settings, the typed records steps hand each other, a table's data contract, locks and faults. It imports nothing else of Lockgate."""
