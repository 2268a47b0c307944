"""Reading data sets (tables, images, texts, arrays) into what validation looks at, and snapshotting validated data under its content hash."""
