//! Cost Explorer costs (being written).
